import OrbSim
print(OrbSimVersion.version)
