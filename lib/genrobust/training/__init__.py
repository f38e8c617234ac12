"""The training engine: one loop (fit) and what it steps, the binary and softmax runs, calibration.

Training: the one loop (``loop.fit``: resume, NaN guard, metric sums, selection, checkpoints, metrics log; the
engine settings per device) stepping what ``steppers`` holds (each stepper's ``step`` the whole training step: K
binary models d_k, K = 1 per class or the K as one network from ``fused``; the softmax model), the runs of
``binary`` and ``softmax``, and the calibration constants c_k (``calibrate``). Imports core, store and data.
"""
