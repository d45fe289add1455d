namespace Eldr.Cli;

public static partial class Cli
{
    public static int Run(string[] args)
    {
        Console.Error.WriteLine("eldr: not yet wired");
        return 1;
    }
}
