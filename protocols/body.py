"""The base of every event body model: strict, closed, storable (see protocols.strict)."""

from protocols.strict import WireModel


class Body(WireModel):
    pass
