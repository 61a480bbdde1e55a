from inference.errors import run_cli

from .train import main

run_cli(main)
