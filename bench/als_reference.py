"""The `implicit` library's ALS trained on the matrix the ALS benchmark trains on, with the
same factors, iterations, regularisation, conjugate-gradient solver and threads.

    python als_reference.py DIR USERS ITEMS FACTORS ITERATIONS THREADS

DIR holds users.u32, items.u32 and confidences.f32: one entry per interaction, little-endian.
"""
import os
import sys
import time

import numpy as np
from scipy.sparse import csr_matrix

directory = sys.argv[1]
users, items, factors, iterations, threads = (int(v) for v in sys.argv[2:7])
rows = np.fromfile(os.path.join(directory, "users.u32"), dtype="<u4")
columns = np.fromfile(os.path.join(directory, "items.u32"), dtype="<u4")
confidences = np.fromfile(os.path.join(directory, "confidences.f32"), dtype="<f4")
matrix = csr_matrix((confidences, (rows, columns)), shape=(users, items), dtype=np.float32)

from implicit.cpu.als import AlternatingLeastSquares  # noqa: E402

model = AlternatingLeastSquares(
    factors=factors, iterations=iterations, regularization=0.01, alpha=1.0, use_cg=True,
    calculate_training_loss=False, random_state=42, num_threads=threads)
started = time.perf_counter()
model.fit(matrix, show_progress=False)
took = time.perf_counter() - started
print(f"implicit {__import__('implicit').__version__}: {took:.2f} s")
