"""data_generation"""
