"""The views pushed over the rack view: NVLink matrix, serving, GPU detail, events, group skew."""
