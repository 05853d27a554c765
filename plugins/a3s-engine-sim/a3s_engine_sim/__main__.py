from a3s_engine_sim.cli import run

if __name__ == "__main__":
    run()
