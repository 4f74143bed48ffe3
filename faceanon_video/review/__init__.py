"""``faceanon-video review``: a local web page to check and edit a video's plan, then render it.

``frames.FrameSource`` (frame-exact JPEGs from PyAV) -> ``session.ReviewSession`` (the plan being
edited, previews, the render thread) -> ``app.create_app`` (Flask routes; every request needs the
run's token) -> ``server.ReviewServer`` (loopback, random port). The page is ``static/``: plain
HTML/JS/CSS, no build step, nothing loaded from elsewhere. See the README, "Reviewing before publishing".
"""
