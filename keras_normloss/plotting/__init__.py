"""Figures of runs and sweeps (the application's; the library never imports it).

plots.py          `keras-normloss plot`: a run's curves, its norm dynamics, sweeps' summaries
grid_plots.py     a sweep's grid: error against factor and batch, channel norms, seeds
sweep_panels.py   the panels those figures share
"""
