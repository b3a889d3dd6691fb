"""Where a problem of the problems panel opens: a GPU's detail, a link in the NVLink matrix, a server in
the serving view (its GPUs marked in the rack), the events view for what has no GPU."""

from __future__ import annotations

from typing import TYPE_CHECKING

from monitor.view.problems import Problem

if TYPE_CHECKING:
    from monitor.tui.rack_ui import RackUi


def select_problem(app: RackUi, problem: Problem) -> None:
    """Select the problem's GPU in the rack, when it has one on this layout."""
    if problem.gpu is not None and problem.gpu in app.layout.gpus:
        app.selected = problem.gpu
        app.redraw()


def open_problem(app: RackUi, problem: Problem) -> None:
    """Open the view that shows `problem`."""
    if problem.gpu is not None and problem.gpu in app.layout.gpus:
        app.selected = problem.gpu
    if problem.view == "nvlink":
        app.action_view("nvlink")
        if problem.gpu is not None and problem.link is not None:
            app.call_after_refresh(_aim_link, app, problem.gpu, problem.link)
    elif problem.view == "serving":
        if problem.endpoint is not None:
            app.highlight(problem.endpoint, (problem.gpu,) if problem.gpu is not None else ())
        app.action_view("serving")
    elif problem.view == "events" or problem.gpu is None:
        app.action_view("events")
    else:
        app.open_gpu_detail(problem.gpu)


def _aim_link(app: RackUi, gpu: int, link: int) -> None:
    """Put the NVLink view's cursor on the problem's link (the view opens on the GPU's link 0)."""
    from monitor.tui.screens.nvlink import NvlinkScreen
    from monitor.tui.widgets.nvlink_matrix import NvlinkMatrixView

    screen = app.screen
    if isinstance(screen, NvlinkScreen):
        screen.query_one(NvlinkMatrixView).place_cursor(gpu, link)
        screen.action_move(0, 0)
