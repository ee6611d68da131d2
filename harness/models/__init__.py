"""Models: reference-model recipes and training, the model bundle explainers receive, encoding and truncation, the masked LM, removal operators, offline pretrained weights."""
