"""``python -m visionline.retrain run JOB``: what the retrain worker starts for each job."""

from visionline.retrain.cli import app

app(prog_name="visionline retrain")
