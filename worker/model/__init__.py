"""The model side, in the engine process only: device and dtype, loading, the padded and packed forward passes."""
