"""finetune/retriever"""
