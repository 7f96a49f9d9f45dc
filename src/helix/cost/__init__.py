"""Cost model pieces: roofline op times, collective times, overlap policies, memory, message sizes.

Every function works on numpy arrays and on scalars alike (broadcasting), so the one-configuration
explain path and the million-point sweep run the same formulas.
"""
