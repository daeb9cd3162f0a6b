"""laionknn: k-NN search on the LAION2B CLIP embeddings of the SISAP indexing challenges."""

__version__ = "0.1.0"
