"""asyncio: concurrent commands, an event wait and a listener."""
import asyncio

from qemu_machine.aio import AsyncMachine


async def main():
    vm = AsyncMachine(args=["-accel", "tcg", "-nodefaults"], machine_type="none")
    async with vm:
        await vm.launch()
        replies = await asyncio.gather(*(vm.command("query-status") for _ in range(10)))
        print("statuses:", {reply["status"] for reply in replies})
        async with vm.listen([("STOP", None), ("RESUME", None)]) as events:
            await vm.command("stop")
            print("event:", (await vm.event_wait("STOP", timeout=5))["event"])
            await vm.command("cont")
            async for event in events:  # the listener's own copy of each event
                print("listener:", event["event"])
                if event["event"] == "RESUME":
                    break
    print("exit code:", vm.exit_code)
    vm.close()


asyncio.run(main())
