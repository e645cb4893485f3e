"""The FastAPI feed service. Reads run directories; never imports training."""
