"""Import-only stand-in for torchaudio on CPU machines.

Why: LLaMA-Factory imports torchaudio at module level (llamafactory/data/mm_plugin.py) but uses it only to
load audio inputs, never for text. PyPI's torchaudio wheels are CUDA-linked and fail to load beside the CPU
torch build used here. Installing this stub (``make`` does so on CPU; never on GPU machines, which get the real
package) lets the import succeed; any actual audio use fails with a clear message instead of a crash at import.
"""

__version__ = "0.0.0+text-only-stub"


def __getattr__(name):
    raise ImportError(f"torchaudio.{name}: this environment has only an import stub of torchaudio (text-only "
                      "LLaMA-Factory on CPU). Install the real torchaudio to process audio.")
