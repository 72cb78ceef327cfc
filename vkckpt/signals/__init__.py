"""Signals: actions shared by a thread group, pending sets with siginfo, frames, delivery."""

from vkckpt.signals.actions import SigAction, SignalActions
from vkckpt.signals.pending import PendingSignals, SigInfo

__all__ = ["PendingSignals", "SigAction", "SigInfo", "SignalActions"]
