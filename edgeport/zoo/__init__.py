"""Small built-in models with weights shipped in the repo, so demos and tests run offline."""
