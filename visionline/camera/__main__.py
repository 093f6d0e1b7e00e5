"""``python -m visionline.camera``: the camera CLI (also mounted as ``visionline camera``)."""

from visionline.camera.cli import app

if __name__ == "__main__":
    app(prog_name="python -m visionline.camera")
