"""Training: the one loop (``loop.fit``: resume, selection, metrics log, NaN guard), the binary models d_k per
class or fused (``binary``, ``fused``), the softmax baseline (``softmax``) and the calibration constants c_k
(``calibrate``). Imports core, store and data.
"""
