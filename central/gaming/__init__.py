"""Distribution-level detection of evaluation gaming (刷好评, 恶意差评): see README.md."""
