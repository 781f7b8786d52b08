"""Vision: face detection, alignment and embedding, with the model manifest."""
