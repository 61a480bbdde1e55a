"""finetune/generator"""
