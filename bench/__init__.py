"""Performance bench for Runback: python -m bench.run"""
