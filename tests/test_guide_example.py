"""The example from docs/simulation.md: 1,000 simulated clients answer a poll."""

import trio

from protocol import RoomMessageEvent
from sim import open_simulation


async def student(sim, code, name):
    async with sim.client(name) as me:
        await me.join(code)
        await trio.sleep(60)  # a minute to think (virtual: costs nothing)
        await me.send("poll", {"answer": len(name) % 4})


async def classroom(sim, n, answers):
    async with sim.client(f"teacher{n}") as teacher:
        code = (await teacher.create_session()).code
        await teacher.create_room("poll", kind="poll")
        async with trio.open_nursery() as nursery:
            for i in range(19):
                nursery.start_soon(student, sim, code, f"s{n}-{i}")
            heard = 0
            async for event in teacher.events:
                if isinstance(event, RoomMessageEvent):
                    answers.append(event.data["answer"])
                    heard += 1
                    if heard == 19:
                        break


async def test_a_thousand_students_answer(autojump_clock):
    answers = []
    async with open_simulation(seed=7) as sim, trio.open_nursery() as nursery:
        for n in range(50):  # 50 classrooms x (1 teacher + 19 students) = 1,000 clients
            nursery.start_soon(classroom, sim, n, answers)
    assert len(answers) == 50 * 19
