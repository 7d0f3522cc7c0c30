"""``snm.utils.parallel``: joblib's ``Parallel`` with a tqdm progress bar (reference name ``ParallelTqdm``)."""

from __future__ import annotations

from typing import Any

from joblib import Parallel
from tqdm.auto import tqdm

__all__ = ["ParallelTqdm"]


class ParallelTqdm(Parallel):
    """:class:`joblib.Parallel` showing completed tasks in a tqdm bar.

    Parameters
    ----------
    total_tasks : int, optional
        Number of tasks (the bar's total; grows with dispatched tasks when unknown).
    desc : str, optional
        Bar label.
    disable_progressbar : bool, optional
        Hide the bar.
    show_joblib_header : bool, optional
        Keep joblib's own verbose output.
    **kwargs
        Passed to :class:`joblib.Parallel` (``n_jobs``, ``backend`` ...).
    """

    def __init__(self, *, total_tasks: int | None = None, desc: str | None = None,
                 disable_progressbar: bool = False, show_joblib_header: bool = False, **kwargs: Any) -> None:
        if "verbose" in kwargs and not show_joblib_header:
            kwargs.pop("verbose")
        super().__init__(verbose=10 if show_joblib_header else 0, **kwargs)
        self.total_tasks = total_tasks
        self.desc = desc
        self.disable_progressbar = disable_progressbar
        self.progress_bar = None

    def __call__(self, iterable):
        """Run the tasks of ``iterable`` (delayed calls) with the bar; return their results."""
        self.progress_bar = tqdm(total=self.total_tasks, desc=self.desc, disable=self.disable_progressbar,
                                 unit="task")
        try:
            return super().__call__(iterable)
        finally:
            self.progress_bar.close()

    def dispatch_one_batch(self, iterator):
        """Dispatch a batch; grow the bar's total when the number of tasks was not given."""
        dispatched = super().dispatch_one_batch(iterator)
        if self.total_tasks is None and self.progress_bar is not None:
            self.progress_bar.total = self.n_dispatched_tasks
            self.progress_bar.refresh()
        return dispatched

    def print_progress(self) -> None:
        """Joblib's progress hook: move the bar to the number of completed tasks."""
        if self.progress_bar is None:
            return
        if self.total_tasks is None and self._original_iterator is None:
            self.progress_bar.total = self.n_dispatched_tasks
        self.progress_bar.n = self.n_completed_tasks
        self.progress_bar.refresh()
