"""One hang guard for every wait in the suite.

CI shares its two cores with other jobs, so no wait may be shorter than the work can take on a loaded machine:
waits end on the signal they wait for, and this limit only stops a test that would otherwise hang forever.
"""

HANG_GUARD_S = 20 * 60
HANG_GUARD_MS = HANG_GUARD_S * 1000
