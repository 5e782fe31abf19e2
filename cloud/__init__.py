"""The operator's cloud: members, drivers, cards, cars, reservations and fees; the booking rules
as a policy; the HTTP API of the phone site."""
