"""Golden models: for every block a float64 reference (the maths) and a bit-exact integer one
(our quantisation, rounding, LUTs and saturation), which the RTL must equal exactly."""
