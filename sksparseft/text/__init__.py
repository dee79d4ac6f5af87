"""Texts as tokens: encoding, token-group discovery and positions, adaptive tokenization."""
