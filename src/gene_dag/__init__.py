"""gene-dag"""
