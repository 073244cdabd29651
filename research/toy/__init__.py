"""Research code on the toy world: the model's training recipe, the selection study, the judge's report."""
