"""Trace-driven simulation of the gateway's pool under the same policies as the live runs.

``profile`` describes a platform (model on a device): how long each cold-start phase
takes, how fast it prefills and decodes, what it draws in each state. ``engine`` replays
a trace against a policy on a profile in simulated time.
"""
