"""Batch scoring of an exported model as an Apache Beam job (RunInference); see scoring/run.py."""
