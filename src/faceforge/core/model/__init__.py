"""A version's model without any toolchain: the recognition head (scoring and fitting, numpy only), its
calibration and the stranger population, the head's file and the manifest (the contract with every app)."""
