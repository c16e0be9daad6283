# The test suite's virtual environments (sourced by scripts/test.sh and tests/test_setup_plan.py).
# Never the venv launch.sh uses (<repo>/.venv or DIST_TRAIN_VENV): pip would install the CPU
# paddlepaddle over a GPU machine's paddlepaddle-gpu there (both ship paddle/). Each leg pins a
# CPU wheel, so setup.sh never picks the GPU one for them, with or without nvidia-smi.
#   leg 1  the whole suite under Paddle 3.3.1
#   leg 2  the tests marked `paddle2` under Paddle 2.6.2 (what `pip install paddlepaddle-gpu`
#          gives GPU users)
TEST_LEG1_VENV="$REPO/.venv-test" TEST_LEG1_PADDLE="paddlepaddle==3.3.1"
TEST_LEG2_VENV="$REPO/.venv-paddle2" TEST_LEG2_PADDLE="paddlepaddle==2.6.2"
