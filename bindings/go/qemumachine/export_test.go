package qemumachine

// AbandonedTickets is how many commands whose caller gave up still have
// their late reply to drop.
func AbandonedTickets(m *Machine) int { return m.abandonedTickets() }
