"""Prompt text: phrases, counterfactual rivals, prompt lists."""
