"""Zones and lines: scripted tracks give exactly the events and counts the rules say."""
from __future__ import annotations

import numpy as np

from pipeline.analytics.geometry import points_in_polygon, polygon_problem, side_of_line
from pipeline.analytics.zones import Line, Zone, ZoneLineCounter

SQUARE = np.array([[0.25, 0.25], [0.75, 0.25], [0.75, 0.75], [0.25, 0.75]])


def walk(counter: ZoneLineCounter, path: list[tuple[float, float]], tid: int = 1, label: str = "person",
         end: bool = True) -> list:
    """A 10x20 px object on a 100x100 frame whose bottom-centre follows `path` (pixels), 1 frame/s."""
    events = []
    for k, (x, y) in enumerate(path):
        events += counter.update(float(k), 100, 100, [tid], [label], [0], np.array([[x - 5, y - 20, x + 5, y]]))
    if end:
        events += counter.update(float(len(path)), 100, 100, [], [], [], np.zeros((0, 4)), ended=(tid,))
    return events


def test_geometry_basics() -> None:
    assert points_in_polygon(np.array([[0.5, 0.5], [0.1, 0.5], [0.75, 0.5]]), SQUARE).tolist() == [True, False, False]
    assert side_of_line(np.array([[0.5, 0.9], [0.5, 0.1], [0.3, 0.5]]), np.array([0, 0.5]), np.array([1, 0.5])).tolist() == [1, -1, 0]
    assert polygon_problem(np.array([[0, 0], [1, 1], [1, 0], [0, 1]])).startswith("the polygon intersects itself")
    assert polygon_problem(SQUARE) is None
    rng = np.random.default_rng(0)
    pts = rng.uniform(-0.1, 1.1, (500, 2))
    pts[:50] = np.round(pts[:50] * 4) / 4  # on corners and edges too
    star = np.array([[0.5, 0.0], [0.6, 0.4], [1.0, 0.5], [0.6, 0.6], [0.5, 1.0], [0.4, 0.6], [0.0, 0.5], [0.4, 0.4]])
    for poly in (SQUARE, star):  # the prepared hot-path forms agree with the plain functions
        assert (Zone("z", poly, None).contains(pts) == points_in_polygon(pts, poly)).all()
    line = Line("l", np.array([0.1, 0.2]), np.array([0.9, 0.7]), None)
    assert line.sides(pts) == side_of_line(pts, line.start, line.end).tolist()


def test_zone_enter_and_exit_with_dwell() -> None:
    c = ZoneLineCounter((Zone("z", SQUARE, None),))
    events = walk(c, [(10, 50), (30, 50), (50, 50), (70, 50), (90, 50)])
    assert [(e.kind, e.zone, e.track_id) for e in events] == [("zone_enter", "z", 1), ("zone_exit", "z", 1)]
    assert events[1].dwell_s == 3.0  # entered at t=1 (x=30), outside at t=4 (x=90)
    assert c.counts == {("z", "person", "enter"): 1, ("z", "person", "exit"): 1}


def test_track_ending_inside_exits_with_dwell_to_last_seen() -> None:
    c = ZoneLineCounter((Zone("z", SQUARE, None),))
    events = walk(c, [(10, 50), (40, 50), (50, 50)])
    assert [e.kind for e in events] == ["zone_enter", "zone_exit"]
    assert events[1].dwell_s == 1.0
    assert c.tracked() == 0  # ended tracks leave no state


def test_loitering_once_per_visit() -> None:
    c = ZoneLineCounter((Zone("z", SQUARE, None, loiter_s=2.5),))
    events = walk(c, [(50, 50)] * 6)
    assert [e.kind for e in events] == ["zone_enter", "loitering", "zone_exit"]
    assert events[1].dwell_s == 3.0


def test_line_directions_and_segment_ends() -> None:
    line = Line("kerb", np.array([0.2, 0.5]), np.array([0.8, 0.5]), None)
    c = ZoneLineCounter((), (line,))
    down = walk(c, [(50, 30), (50, 45), (50, 55), (50, 70)], tid=1)
    up = walk(c, [(50, 70), (50, 50), (50, 40)], tid=2)  # touches the line, then crosses
    around = walk(c, [(90, 30), (90, 70)], tid=3)  # passes beside the segment: no crossing
    assert [(e.kind, e.direction) for e in down] == [("line_cross", "forward")]
    assert [(e.kind, e.direction) for e in up] == [("line_cross", "backward")]
    assert around == []
    assert c.counts == {("kerb", "person", "forward"): 1, ("kerb", "person", "backward"): 1}


def test_class_filter() -> None:
    c = ZoneLineCounter((Zone("z", SQUARE, frozenset({"car"})),))
    assert walk(c, [(10, 50), (50, 50), (90, 50)], label="person") == []
    assert [e.kind for e in walk(c, [(10, 50), (50, 50), (90, 50)], tid=2, label="car")] == ["zone_enter", "zone_exit"]


def test_new_rules_keep_state_of_kept_names() -> None:
    c = ZoneLineCounter((Zone("z", SQUARE, None),))
    walk(c, [(50, 50)], end=False)
    c.set_rules((Zone("z", SQUARE, None), Zone("w", SQUARE, None)), ())
    events = c.update(1.0, 100, 100, [1], ["person"], [0], np.array([[85, 30, 95, 50]]))
    assert [(e.kind, e.zone) for e in events] == [("zone_exit", "z")]  # still inside z: no new enter
    c.set_rules((), ())
    assert c.counts == {}
