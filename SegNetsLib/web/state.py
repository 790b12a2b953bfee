"""The SegNets panel's state, shared between the server and the page (trame typed state)."""

from __future__ import annotations

from dataclasses import dataclass, field

from trame_server import Server

# the fields Segment and Fine-tune read: their clicks send them as the page shows them (a changed field alone reaches
# the server only once none of the page's messages awaits an answer; see take_fields)
CLICK_FIELDS = ("model_key", "roi_mode", "device", "time_budget_s", "suggested_empty")


def take_fields(server: Server, names: object, fields: dict | None) -> None:
    """Write the fields a click sent ({state name: value}; those of :data:`CLICK_FIELDS`, ``names`` being the typed
    state's names) into the server's state as the page's own update of them is written: not pushed back to the page.
    Pushed back, they could reach the page after the user typed again and put the older value back in the field, which
    the page would then send as the user's (a changed field reaches the server alone only once the page is idle)."""
    allowed = {getattr(names, key) for key in CLICK_FIELDS}
    taken = [{"key": name, "value": value} for name, value in (fields or {}).items() if name in allowed]
    if taken and server.protocol is not None:
        server.protocol_call("trame.state.update", taken)  # trame's handler of the page's own updates
    else:  # no page connected: the server is not started
        server.state.update({change["key"]: change["value"] for change in taken})


@dataclass
class Choice:
    """One entry of a picker: ``title`` is what the user reads, ``value`` what the server gets
    (a model's "id@version", a device spec such as "cuda:0")."""

    title: str
    value: str


@dataclass
class PanelState:
    """Everything the SegNets panel shows. Fractions are 0..1; times are seconds."""

    volume_name: str = ""
    data_volumes: list[Choice] = field(default_factory=list)  # the --data folder's volumes; empty for fewer than two
    data_volume: str | None = None  # the value of the data volume shown; None for an upload or none loaded
    models: list[Choice] = field(default_factory=list)
    model_key: str | None = None
    model_card_text: str = ""
    roi_mode: str = "auto"
    device: str = "auto"
    devices: list[Choice] = field(default_factory=list)
    time_budget_s: float = 60.0

    busy: bool = False
    job_kind: str = ""  # "segment" or "finetune" while one runs
    progress: float = 0.0
    stage: str = ""
    cancelling: bool = False

    losses: list[float] = field(default_factory=list)
    validation_dice: float | None = None
    iteration: int = 0

    has_result: bool = False
    result_name: str = ""
    annotated_slices: int = 0

    round: int = 0  # the last Fine-tune's interactive round (1, then 2, 3, ... when continued)
    suggested_slice: int | None = None  # the slice to paint next after the last result (along suggested_axis)
    suggested_axis: int = 0
    suggested_empty: bool = False  # the user says the suggested slice holds none of the structure (learned as such)
    round_text: str = ""  # the round, its time and the slice to paint next, in one sentence

    message: str = ""  # the last outcome, in one sentence
    error: str = ""  # shown in a red alert until the next action
