"""Features stage: stimulus images → DNN unit activations (pre-ReLU), streamed in batches."""
