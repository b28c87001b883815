"""Where values come from: the polling engine's DataQueue (:mod:`.intake`) and the built-in
simulator that stands in for a polling engine (:mod:`.simulator`)."""
