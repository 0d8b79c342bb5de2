"""Server time of the app on the committed demo results: first render of the overview, a cached slider change."""
import time

from common import ROOT, save
from streamlit.testing.v1 import AppTest


def main() -> None:
    start = time.perf_counter()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    first = time.perf_counter() - start
    assert not at.exception
    lab = AppTest.from_file(str(ROOT / "pages" / "2_Projection_lab.py"), default_timeout=60).run()
    times = []
    for frac in (0.5, 0.1, 0.25, 0.75, 0.5):
        start = time.perf_counter()
        lab.slider(key="proj_frac").set_value(frac).run()
        times.append(time.perf_counter() - start)
        assert not lab.exception and len(lab.metric) == 8
    save("app", {"overview_first_render_s": round(first, 2), "cached_slider_change_s": round(max(times[1:]), 3)})


if __name__ == "__main__":
    main()
