"""Compare the written TFLite model with the float reference, and judge the result."""
