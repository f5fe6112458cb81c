"""Retrieval evaluation: BEIR-exact metrics, TREC run files, paired significance tests."""
