"""Datasets: configs, material splits, sparse HDF5 shards, parallel resumable generation, torch loading."""
