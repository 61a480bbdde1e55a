"""Development experiments, apart from the product: the settings ablations scored on train qrels
(``dev_ablation``, configs in ``experiments/configs/``), the label-free add-ons check, the transfer check on other
corpora and the README's reranker table (``reranker_table.sh``). They may import ``scripts`` and the packages
below it; nothing in ``inference``/``evaluation``/``data_generation``/``finetune``/``scripts`` imports them."""
