"""The shared vocabulary: models, ports (what the pipeline needs from the world), the bus, time, the NYSE calendar."""
