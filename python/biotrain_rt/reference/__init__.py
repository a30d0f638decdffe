"""Independent NumPy reference of every kernel, written from the math in
float64. It never calls the C core: it is what the C core is checked against,
and it is itself checked against PyTorch and finite differences."""
