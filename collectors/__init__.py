"""Sources of telemetry: NVML, Prometheus scrapes and the simulated GB300 NVL72 rack.

Every source turns one tick into a storage.frame.Frame; nothing downstream knows which one it was.
"""
