using System.CommandLine;

namespace Eldr.Cli;

public static partial class Cli
{
    // Commands from other parts of the tool (prune) are registered here.
    static IEnumerable<Command> ExtraCommands() => [PruneCommand.Create(), DemoCommand.Create(), ZeroShotCommand.Create(), SpeedCommand.Create(), KernelsCommand.Create()];
}
