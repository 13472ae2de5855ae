"""What the node agent knows about a pod's containers, and the pod status it reports.

The functional core of the agent: :class:`ContainerTrack` records one container's
attempts; :func:`build_pod_status` turns the tracks into the ``status`` the API server
stores, following kubelet's rules (``getPhase``, the pod conditions, container states).
Nothing here does I/O, so every transition is unit-tested.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

HOST_IP = "127.0.0.1"
POD_IP = "127.0.0.1"

# Conditions this agent owns; every other condition (PodScheduled, DisruptionTarget...)
# belongs to someone else and is carried over unchanged.
OWN_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady")

TERMINAL_PHASES = ("Succeeded", "Failed")

DEADLINE_REASON = "DeadlineExceeded"
DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"

UNKNOWN_REASON = "ContainerStatusUnknown"
UNKNOWN_EXIT_CODE = 137
LOST_MESSAGE = ("The container could not be located when the pod was terminated: "
                "the node agent restarted and its processes are gone")
NOT_STARTED_MESSAGE = "The container could not be located when the pod was terminated"


def rfc3339(dt: datetime) -> str:
    """metav1.Time: UTC, whole seconds (the API server drops the fraction anyway)."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass
class Attempt:
    """One run of a container: a process that started (or failed to start) and maybe ended."""

    container_id: str
    started_at: datetime | None
    image_id: str = ""
    pid: int | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    reason: str | None = None
    message: str | None = None

    def terminated_dict(self) -> dict:
        d: dict = {
            "exitCode": int(self.exit_code if self.exit_code is not None else UNKNOWN_EXIT_CODE),
            "reason": self.reason or ("Completed" if self.exit_code == 0 else "Error"),
        }
        if self.started_at is not None:
            d["startedAt"] = rfc3339(self.started_at)
            d["finishedAt"] = rfc3339(self.finished_at or self.started_at)
        if self.message:
            d["message"] = self.message
        if self.container_id:
            d["containerID"] = self.container_id
        return d


def terminated_reason(exit_code: int, oom_killed: bool = False) -> str:
    """Kubelet's reasons: OOMKilled beats the exit code; then Completed for 0, Error otherwise."""
    if oom_killed:
        return "OOMKilled"
    return "Completed" if exit_code == 0 else "Error"


@dataclass
class ContainerTrack:
    """A container of the pod spec, in exactly one state: waiting, running or terminated."""

    name: str
    image: str
    restart_count: int = 0
    waiting: tuple[str, str | None] | None = ("ContainerCreating", None)
    running: Attempt | None = None
    terminated: Attempt | None = None
    last_terminated: Attempt | None = None

    @property
    def ever_ran(self) -> bool:
        return any((self.running, self.terminated, self.last_terminated))

    @property
    def succeeded(self) -> bool:
        return self.terminated is not None and self.terminated.exit_code == 0

    @property
    def latest(self) -> Attempt | None:
        return self.running or self.terminated or self.last_terminated

    def set_waiting(self, reason: str, message: str | None = None) -> None:
        if self.terminated is not None:
            self.last_terminated = self.terminated
        self.waiting, self.running, self.terminated = (reason, message), None, None

    def start(self, attempt: Attempt) -> None:
        if self.terminated is not None:
            self.last_terminated = self.terminated
        self.waiting, self.running, self.terminated = None, attempt, None

    def finish(self, attempt: Attempt) -> None:
        """The attempt ended (or never started: StartError)."""
        if self.running is None and self.terminated is not None:
            self.last_terminated = self.terminated
        self.waiting, self.running, self.terminated = None, None, attempt

    def to_status(self) -> dict:
        latest = self.latest
        d: dict = {
            "name": self.name,
            "image": self.image,
            "imageID": latest.image_id if latest else "",
            "ready": self.running is not None,
            "started": self.running is not None,
            "restartCount": self.restart_count,
        }
        if latest and latest.container_id:
            d["containerID"] = latest.container_id
        if self.running is not None:
            # A running attempt always has started_at (only a start failure lacks it).
            d["state"] = {"running": {"startedAt": rfc3339(self.running.started_at)}}  # type: ignore[arg-type]
        elif self.terminated is not None:
            d["state"] = {"terminated": self.terminated.terminated_dict()}
        else:
            reason, message = self.waiting or ("ContainerCreating", None)
            d["state"] = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        d["lastState"] = ({"terminated": self.last_terminated.terminated_dict()}
                          if self.last_terminated is not None else {})
        return d


# ---------------------------------------------------------------- restart policy


def should_restart(policy: str, exit_code: int | None) -> bool:
    """Whether a container that exited with ``exit_code`` runs again under ``policy``."""
    if policy == "Always":
        return True
    if policy == "OnFailure":
        return exit_code != 0
    return False


def init_restart_policy(pod_policy: str) -> str:
    """Init containers are retried on failure unless the pod never restarts anything."""
    return "Never" if pod_policy == "Never" else "OnFailure"


# ---------------------------------------------------------------- phase and conditions


def pod_phase(policy: str, init_tracks: Sequence[ContainerTrack], tracks: Sequence[ContainerTrack],
              *, failed: bool = False, killed: bool = False) -> str:
    """Kubelet's ``getPhase`` for our tracks.

    ``failed``: a pod-level failure (deadline exceeded). ``killed``: the agent stopped every
    process for good (deletion, deadline, shutdown), so nothing will run again.
    """
    if failed:
        return "Failed"
    for t in init_tracks:
        if t.succeeded:
            continue
        if killed or (t.terminated is not None and policy == "Never"):
            return "Failed"
        return "Pending"
    waiting = running = stopped = succeeded = 0
    for t in tracks:
        if t.running is not None:
            running += 1
        elif t.terminated is not None:
            stopped += 1
            succeeded += t.terminated.exit_code == 0
        elif t.last_terminated is not None:
            stopped += 1  # waiting to restart counts as stopped, as in kubelet
        else:
            waiting += 1
    if killed:
        return "Succeeded" if tracks and succeeded == len(tracks) else "Failed"
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        if policy == "Always":
            return "Running"
        if succeeded == stopped:
            return "Succeeded"
        if policy == "Never":
            return "Failed"
        return "Running"  # OnFailure: restarting the failed ones
    return "Pending"


def _condition(ctype: str, ok: bool, previous: Mapping[str | None, Mapping], now: datetime,
               reason: str | None = None, message: str | None = None) -> dict:
    status = "True" if ok else "False"
    prev = previous.get(ctype)
    since = prev.get("lastTransitionTime") if prev and prev.get("status") == status else None
    c: dict = {"type": ctype, "status": status, "lastProbeTime": None,
               "lastTransitionTime": since or rfc3339(now)}
    if reason:
        c["reason"] = reason
    if message:
        c["message"] = message
    return c


def pod_conditions(phase: str, init_tracks: Sequence[ContainerTrack], tracks: Sequence[ContainerTrack],
                   *, sandbox_ready: bool, previous: Sequence[Mapping], now: datetime) -> list[dict]:
    """The four conditions kubelet owns, keeping lastTransitionTime while a status holds."""
    prev = {c.get("type"): c for c in previous or []}
    terminal = phase in TERMINAL_PHASES
    pending_init = [t.name for t in init_tracks if not t.succeeded]
    unready = [t.name for t in tracks if t.running is None]
    initialized = not pending_init
    ready = not terminal and not unready and bool(tracks)
    ready_reason: str | None
    ready_message: str | None
    if terminal:
        ready_reason, ready_message = "PodCompleted", None
    else:
        ready_reason = None if ready else "ContainersNotReady"
        ready_message = None if ready else f"containers with unready status: [{' '.join(unready)}]"
    return [
        _condition("PodReadyToStartContainers", sandbox_ready and not terminal, prev, now),
        _condition("Initialized", initialized, prev, now,
                   None if initialized else "ContainersNotInitialized",
                   None if initialized else f"containers with incomplete status: [{' '.join(pending_init)}]"),
        _condition("Ready", ready, prev, now, ready_reason, ready_message),
        _condition("ContainersReady", ready, prev, now, ready_reason, ready_message),
    ]


@dataclass
class PodView:
    """Everything :func:`build_pod_status` needs besides the pod object."""

    init_tracks: list[ContainerTrack] = field(default_factory=list)
    tracks: list[ContainerTrack] = field(default_factory=list)
    start_time: datetime | None = None
    sandbox_ready: bool = False
    failure: tuple[str, str] | None = None  # pod-level (reason, message), e.g. DeadlineExceeded
    killed: bool = False


def build_pod_status(pod: Mapping, view: PodView, *, previous_conditions: Sequence[Mapping] | None,
                     now: datetime) -> dict:
    """The pod's ``status`` as this agent reports it (sent as a JSON merge patch).

    Conditions owned by others are copied from ``pod``; ours keep their lastTransitionTime
    from ``previous_conditions`` (what we sent last) while their status holds.
    """
    spec = pod.get("spec") or {}
    policy = spec.get("restartPolicy") or "Always"
    # A pod-level failure (deadline) shows once its processes are gone: kubelet never reports
    # a terminal phase while containers still run.
    failed = view.failure is not None and view.killed
    phase = pod_phase(policy, view.init_tracks, view.tracks, failed=failed, killed=view.killed)
    current = list(((pod.get("status") or {}).get("conditions")) or [])
    previous = previous_conditions if previous_conditions is not None else current
    ours = pod_conditions(phase, view.init_tracks, view.tracks, sandbox_ready=view.sandbox_ready,
                          previous=previous, now=now)
    foreign = [c for c in current if c.get("type") not in OWN_CONDITIONS]
    status: dict = {
        "phase": phase,
        "conditions": ours + foreign,
        "hostIP": HOST_IP,
        "hostIPs": [{"ip": HOST_IP}],
        "podIP": POD_IP,
        "podIPs": [{"ip": POD_IP}],
        "startTime": rfc3339(view.start_time or now),
        "containerStatuses": [t.to_status() for t in view.tracks],
    }
    generation = (pod.get("metadata") or {}).get("generation")
    if generation:  # which spec this status describes (kubelet does this since 1.33)
        status["observedGeneration"] = generation
        for c in ours:
            c["observedGeneration"] = generation
    if view.init_tracks:
        status["initContainerStatuses"] = [t.to_status() for t in view.init_tracks]
    if failed and view.failure is not None:
        status["reason"], status["message"] = view.failure
    return status


# ---------------------------------------------------------------- recovery after a restart


def _attempt_from_terminated(term: Mapping) -> Attempt:
    started = parse_time(term.get("startedAt")) or now_utc()
    return Attempt(
        container_id=term.get("containerID", ""), started_at=started,
        finished_at=parse_time(term.get("finishedAt")) or started,
        exit_code=int(term.get("exitCode", UNKNOWN_EXIT_CODE)), reason=term.get("reason"),
        message=term.get("message"))


def tracks_from_status(containers: Sequence[Mapping], statuses: Sequence[Mapping] | None,
                       now: datetime) -> tuple[list[ContainerTrack], list[str]]:
    """Rebuild tracks from a status written by an earlier agent run.

    Processes never survive the agent ("adopt nothing"), so a container reported running
    is now terminated ``ContainerStatusUnknown`` with exit code 137. Returns the tracks and
    the names of the containers found lost that way.
    """
    by_name = {s.get("name"): s for s in statuses or []}
    tracks: list[ContainerTrack] = []
    lost: list[str] = []
    for c in containers:
        t = ContainerTrack(name=c["name"], image=c.get("image", ""))
        s = by_name.get(c["name"])
        if s:
            t.restart_count = int(s.get("restartCount") or 0)
            last = (s.get("lastState") or {}).get("terminated")
            if last:
                t.last_terminated = _attempt_from_terminated(last)
            state = s.get("state") or {}
            if state.get("running"):
                started = parse_time(state["running"].get("startedAt")) or now
                t.finish(Attempt(container_id=s.get("containerID", ""), started_at=started,
                                 image_id=s.get("imageID", ""), finished_at=now,
                                 exit_code=UNKNOWN_EXIT_CODE, reason=UNKNOWN_REASON,
                                 message=LOST_MESSAGE))
                lost.append(t.name)
            elif state.get("terminated"):
                t.finish(_attempt_from_terminated(state["terminated"]))
            elif t.last_terminated is not None:
                t.waiting = ("ContainerCreating", None)
        tracks.append(t)
    return tracks, lost


def mark_never_started(tracks: Sequence[ContainerTrack], now: datetime) -> None:
    """When a pod is killed for good, containers still waiting end as kubelet reports them."""
    for t in tracks:
        if t.running is not None or t.terminated is not None:
            continue
        if t.last_terminated is not None:
            # back to its last run: it will not be restarted any more
            t.terminated, t.last_terminated, t.waiting = t.last_terminated, None, None
            continue
        t.finish(Attempt(container_id="", started_at=None, exit_code=UNKNOWN_EXIT_CODE, reason=UNKNOWN_REASON,
                         message=NOT_STARTED_MESSAGE))
